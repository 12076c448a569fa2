// Anchors the test precompiled header target.
