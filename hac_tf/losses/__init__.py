"""hac_tf.losses"""
