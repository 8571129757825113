"""The `assetrag` commands, one module per group; `cli/app.py` mounts each module's
`commands` in the order `assetrag --help` lists them.

stack: up, api, worker · ingest · search · generate · jobs: results, jobs, cancel ·
duplicates · collections: collections, reindex, versions, drop-version · models: check-model
"""
