"""The measuring side: how fast is a configuration here, and which is fastest?

It uses the model library (`blocks.models`, `blocks.variants`, ...); the library never imports it.
"""
