"""hac_tf.export"""
