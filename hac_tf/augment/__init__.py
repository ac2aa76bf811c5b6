"""hac_tf.augment"""
