"""Layer 1: the wheel-variant standard. Pure: values in, values out."""
