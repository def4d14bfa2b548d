"""Federated search: several sites search one plan; only summaries leave a site."""
