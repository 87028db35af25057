"""epsd_tf.analysis."""
