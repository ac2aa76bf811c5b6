"""hac_tf.downstream"""
