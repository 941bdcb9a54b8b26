"""The `edgeseq` command: the app (app.py), one module per verb over shared argument groups (args.py), the tables
(tables.py) and plain-text printing (console.py)."""
