"""What a person or a CI job touches: the CLI, up, demo, reports, the pytest plugin."""
