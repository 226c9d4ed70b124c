"""The RedHeart module tree (net.py) and its parameter table (summary.py)."""
