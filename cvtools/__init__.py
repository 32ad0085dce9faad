"""CV Tools: build an image classifier end to end and serve it over REST."""

__version__ = "0.1.0"
