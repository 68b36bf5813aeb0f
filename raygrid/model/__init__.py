"""The network a cell trains: encoder, pooling and heads, positions; export and reload."""
