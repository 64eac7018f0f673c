"""Judge backends behind one protocol, prompt templates, verdict parsing, retries."""
