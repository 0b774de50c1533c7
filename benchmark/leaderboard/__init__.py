"""Leaderboard: a static site ranking editor × restraint rows within comparable groups
(``seqedit leaderboard build``), built from validated result folders."""
