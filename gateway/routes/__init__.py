"""HTTP routes: parse -> decide -> act. No business logic lives here."""
