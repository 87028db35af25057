"""epsd_tf.models."""
