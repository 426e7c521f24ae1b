"""Concept injection and introspection (after Lindsey 2025), with controls, and the H-neuron link.

- :mod:`.injection` — concept vectors, the per-row residual-stream injection through nnsight, a hook reference;
- :mod:`.trials` — the detection and neutral prompts, the grid of conditions, the rule judges, cached trials;
- :mod:`.analysis` — rates per layer × strength with paired differences against the controls, the coherence
  rule, the judges against reference labels, and the sentences that read the tables;
- :mod:`.confidence` — the model's stated confidence in its own answers, under the H-neurons scaled by α.
"""
