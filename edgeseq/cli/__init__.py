"""The `edgeseq` command: shared argument groups (args.py) + one thin command per verb (main.py)."""
