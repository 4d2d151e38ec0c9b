"""OVN Northbound access: the only package that imports ovsdbapp for the NB.

model.py and plan.py are pure (no ovsdbapp); connection.py and apply.py do the I/O.
"""
