"""Server-rendered pages shared by the services: templates, sign-in cookie, CSRF, static files."""
