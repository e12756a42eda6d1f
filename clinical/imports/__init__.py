"""License imports and exports: reading and checking files (files, checks), background jobs (jobs), the
console pages (admin) and the import-export resources (resources).
"""
