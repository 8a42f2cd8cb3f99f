"""Performance simulator projecting measured costs to cluster scale."""
