"""Settings: the typed, validated view of params.yaml, the named presets, and the check that every
local input a setting names is there.
"""
