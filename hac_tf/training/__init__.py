"""hac_tf.training"""
