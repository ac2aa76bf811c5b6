"""hac_tf.data"""
