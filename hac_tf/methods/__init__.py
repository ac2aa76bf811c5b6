"""hac_tf.methods"""
