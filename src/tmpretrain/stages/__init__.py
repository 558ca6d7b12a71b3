"""DVC stage entry points: `python -m tmpretrain.stages.<stage>`, each a thin layer over the library."""
