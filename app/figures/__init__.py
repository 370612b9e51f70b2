"""Plotly figure builders of the pages: data in, `go.Figure` out, no streamlit."""
