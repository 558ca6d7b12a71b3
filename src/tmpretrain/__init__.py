"""Pretraining of a TrackMania IQN agent's image encoder and action head from replay captures."""
