"""SAE Atlas Streamlit app (entry script: main.py)."""
