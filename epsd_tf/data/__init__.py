"""epsd_tf.data."""
