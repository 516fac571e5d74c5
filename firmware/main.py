"""Board entry point."""
from firmware import app

app.main()
