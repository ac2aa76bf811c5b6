"""hac_tf.models"""
