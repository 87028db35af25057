"""epsd_tf.pruning."""
