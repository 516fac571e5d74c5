"""Board files (JSON: pins, buses, flash layout): package data, so an installed fogline can deploy."""
