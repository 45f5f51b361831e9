"""GitHub Actions: the plan CI fans out, the workflows, and merging what the jobs built."""
