"""epsd_tf.export."""
