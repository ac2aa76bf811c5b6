"""hac_tf.evaluation"""
