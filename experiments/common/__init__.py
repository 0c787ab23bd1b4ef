"""What the experiments share: statistics, run records, resumable run stores."""
