"""The built-in cartoon-faces world: its procedural data (data), network (model), caption encoder
(text), denoiser, final-image stage, examples and loading (world); training/ and evaluation/ are
never imported when serving."""
