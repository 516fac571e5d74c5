"""`fogline demo`: a virtual site (nodes on the MicroPython unix port, gateway, cloud) with a dashboard and a ground-truth ledger."""
