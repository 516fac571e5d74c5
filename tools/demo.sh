#!/usr/bin/env bash
# One command: set up (first run) and run the Fogline demo. Arguments go to `fogline demo`.
source "$(dirname "$0")/_venv.sh" tools
exec fogline demo "$@"
