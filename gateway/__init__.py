"""canonic-gateway: the HTTP app and the CLI that wire governance and providers together."""
