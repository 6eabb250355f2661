"""SteerLM: attribute prediction model, annotation, attribute-conditioned generation, bootstrapping."""
