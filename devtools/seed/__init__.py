"""The demo seed, in steps: users, providers and licenses, patients, visits, support cases (``demo`` runs them)."""
