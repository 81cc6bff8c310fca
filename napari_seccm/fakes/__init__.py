"""Protocol-level fakes of the instruments napari-seccm drives.

Each fake speaks its instrument's wire protocol to the unmodified vendor
client library (GCS ASCII for PI controllers, MethodSCRIPT for PalmSens, the
NI gRPC device server's API for NI-DAQmx), with finite speeds, on-target
delays, controller errors, timeouts and dropped connections, and one
simulated cell behind them all (:class:`~.world.FakeWorld`). They stand in
for the hardware in the tests and in ``napari-seccm fake-hardware``, so that
a real-hardware config can be rehearsed before the instrument is touched.

This package sits beside :mod:`napari_seccm.simulation`, below the devices:
nothing above it imports it but the tests and the ``fake-hardware`` command.
"""
