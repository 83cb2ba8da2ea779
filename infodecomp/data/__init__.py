"""Datasets for infodecomp.

- :mod:`infodecomp.data.shapes` — ShapesWorld, a procedural, seeded world of coloured shapes with exact
  ground truth (scene graphs, masks, part-of-speech-tagged captions) and twins of the paper's datasets.
- ``coco``, ``aro``, ``download`` — loaders for the real datasets (MS-COCO 2017 val subsets, ARO).

Every dataset is a sequence of plain dicts in the row formats shared by the real loaders and the twins.
"""
