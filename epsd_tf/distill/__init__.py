"""epsd_tf.distill."""
