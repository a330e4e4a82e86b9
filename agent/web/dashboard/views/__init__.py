"""One module per dashboard page: the live fragment it renders."""
