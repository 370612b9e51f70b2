"""Pages registered in app/main.py; each is a thin script: widgets -> cached query -> figure."""
