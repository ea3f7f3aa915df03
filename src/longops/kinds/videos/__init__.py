"""The built-in `generate_videos` kind and its default renderer."""
