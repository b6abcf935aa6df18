"""Operations tooling: the benchmark (``python -m ops.bench``) and its simulated branches."""
