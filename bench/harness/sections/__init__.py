"""One module per benchmark section; each returns table rows."""
