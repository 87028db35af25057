"""epsd_tf.train."""
